"""Fetching datasets: the download registry (sources), downloads, archive extraction, bundled stand-ins."""
