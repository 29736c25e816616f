package servicedef

// CheckExecutable: Windows protects programs with ACLs that the Unix mode
// bits Go reports do not reflect, so there is nothing to check here (as for
// the definitions themselves).
func CheckExecutable(command string) error { return nil }
