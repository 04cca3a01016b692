"""Database: engine and sessions, models, the demo seed."""
