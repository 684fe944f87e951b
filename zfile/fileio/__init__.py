"""File I/O both ends share: chunked reads and writes with few thread hops,
early writeback, and hashing a file's prefix for resume.  Blocking helpers
are documented as such; callers run them in a worker thread."""
