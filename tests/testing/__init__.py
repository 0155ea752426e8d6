"""Tests of the fake Pleo server (`pleo_export_async.testing`), driven over real TCP."""
