"""Where everything a user depends on lives: blobs on disk, the job table, signed result URLs."""
