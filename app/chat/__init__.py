"""The chat domain: plain functions over a SQLAlchemy Session. No HTTP and no templates in here."""
