"""MMSA Explorer: molecular embeddings (MMSA, arXiv 2505.05877) for exploring compound libraries.

`import mmsa` is cheap: it imports neither torch, streamlit, umap nor faiss. Import the
sub-packages you need (`mmsa.chem`, `mmsa.model.encoder`, `mmsa.library`).
"""

__version__ = "0.1.0"
