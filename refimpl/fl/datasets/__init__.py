"""Package data: the MNIST test set (CC BY-SA 3.0) behind the built-in ``mnist-10k`` dataset.

See ``LICENSE-MNIST.txt`` in this directory for the attribution and digests.
"""
