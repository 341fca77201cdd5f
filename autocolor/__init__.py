"""autocolor: automatic colorization of greyscale images with convolutional autoencoders."""

__version__ = "0.1.0"
