"""Real time: the event bus (Litestar channels), presence, and the Server-Sent Events stream."""
