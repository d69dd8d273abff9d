"""Size reports: where every byte of a layer or function goes, against Lambda's limits, and their renderings.

May import: the foundation, `tree` and `aws` (a published layer's size is read from its remote zip).
"""
