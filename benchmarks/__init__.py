"""Benchmarks comparing pleo_export_async with a plain aiohttp loop doing the same work."""
