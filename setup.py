"""Build hooks live here; all metadata is in setup.cfg."""
from setuptools import setup

setup()
