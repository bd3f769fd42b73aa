"""Fetching the datasets of the registry (stcn.registry): URL choice (sources), downloads, archives, stand-ins."""
