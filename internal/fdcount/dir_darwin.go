package fdcount

// dir lists the process's open descriptors.
const dir = "/dev/fd"
