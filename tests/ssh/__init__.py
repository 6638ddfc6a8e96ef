"""Tests of the SSH implementation's pure parts (framing, shell, remote process
scripts) and of its conformance to the Transport Protocol."""
