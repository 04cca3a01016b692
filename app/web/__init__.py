"""HTTP: controllers by area, identity guards, error pages."""
