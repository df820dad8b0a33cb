"""The cloaking engine: a library that works on PIL images and knows nothing of folders or daemons."""
