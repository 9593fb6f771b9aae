"""Development-time tools, kept out of the runtime package and the images: the local suite
(`make run`), its processes and supervisor, a throwaway Redis, and the models and photos
built in code that tests and benchmarks share."""
