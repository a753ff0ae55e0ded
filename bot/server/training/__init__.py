"""Training: jobs and their backends (child process, Ray), the daemon and its Redis configuration, and the
job events for Socket.IO clients."""
