"""Untrusted bytes to pixels: upload bounds, structure checks, strict decoding in worker processes,
faces and their crops."""
