"""How Careline tunes every SQLite connection. A module of its own, free of side effects,
so the benchmarks can give their raw baselines the same page cache without importing
settings.py (which reads DATABASE_URL once, on import)."""

# SQLite's default page cache is 2 MiB; a practice group's database is gigabytes. 128 MiB
# is a fixed bound that holds the appointment indexes of a 10^6-row calendar.
SQLITE_CACHE_KIB = 131_072
# Reads go through the mapped file instead of copies (the kernel's page cache).
SQLITE_MMAP_BYTES = 2 * 1024**3
