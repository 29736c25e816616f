package servicedef

import "io/fs"

// unsafePerm: Windows protects a user's profile with ACLs that the Unix
// mode bits Go reports do not reflect, so there is nothing to check here.
func unsafePerm(fi fs.FileInfo, path, what string) (problem Problem, reason string) { return "", "" }

// openNonblock: opening a file cannot wait for a writer here.
const openNonblock = 0
