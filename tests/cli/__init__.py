"""Tests of the command line and of the real server process."""
