"""Video quality and distribution metrics (the paper's Section 4.1 and A.3.1)."""
