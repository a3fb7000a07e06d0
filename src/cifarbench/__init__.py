"""cifarbench: where ResNet-18/CIFAR-10 training time goes.

Kept import-free so that ``from cifarbench.callbacks import EpochTimer`` loads no model or data code.
"""

__version__ = "0.1.0"
