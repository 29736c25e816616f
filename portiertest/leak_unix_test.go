//go:build unix

package portiertest_test

import "go.uber.org/goleak"

var leakOptions []goleak.Option
