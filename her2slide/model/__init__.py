"""The membrane-segmentation CNN: network, I/O configuration stored with the weights, loading."""
