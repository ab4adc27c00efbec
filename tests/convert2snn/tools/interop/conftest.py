"""Trained networks shared by the interop modules (one consumer per module)."""

import pytest

from tests.convert2snn.tools.nir_nets import AvgCNN, ResidualCNN, digits, trained


@pytest.fixture(scope="session")
def cnn():
    return trained(AvgCNN())


@pytest.fixture(scope="session")
def residual():
    return trained(ResidualCNN())


@pytest.fixture(scope="session")
def calibration():
    return digits()[0][:400]
