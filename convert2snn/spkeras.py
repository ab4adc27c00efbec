"""SpKeras's call style: ``from convert2snn.spkeras import cnn_to_snn`` (implemented in `convert2snn.tools.spkeras`)."""

from .tools.spkeras import cnn_to_snn, set_initial_potential

__all__ = ["cnn_to_snn", "set_initial_potential"]
