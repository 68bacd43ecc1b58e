"""The base of every error caused by the user's input (files, models, weights, destinations)."""


class InputError(Exception):
    """Bad input: the message names the file or setting, the place and what is wrong."""
