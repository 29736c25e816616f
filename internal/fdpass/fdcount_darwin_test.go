package fdpass

// fdDir lists this process's open descriptors.
const fdDir = "/dev/fd"
