"""Graph work between the clean ANN and a runnable SNN.

- `builder`: ANN graph → SNN graph by a scheme's rules;
- `normalize`: scale multiplies folded into weights;
- `limits`: the reference networks of the exactness checks (T → ∞ limit, λ-clipped ANN);
- `serialize`: a clean graph as code-free JSON + tensors, for model files.
"""
