"""The ``vslim`` command line: a thin shell over library functions."""
