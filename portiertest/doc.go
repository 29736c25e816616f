// Package portiertest starts a real portier broker inside a test, with the
// service definitions the test gives it, in the spirit of net/http/httptest:
// NewBroker returns a broker listening on a fresh endpoint, with its files
// in a fresh temporary directory, and stops it, its backends and the
// directory when the test ends.
//
// Nothing is faked: clients dial a real socket, the broker starts real
// backend processes and hands connections to them. A backend needs an
// executable. Give Service.Command the path of a program you built, or run
// this very test binary as the backend: name a Role in the Service, and
// call BackendMain first in TestMain with the function that serves that
// role. The broker then starts the test binary again, BackendMain sees the
// role and runs your backend instead of the tests.
//
//	func TestMain(m *testing.M) {
//		portiertest.BackendMain(map[string]func(context.Context) error{"echo": serveEcho})
//		os.Exit(m.Run())
//	}
//
//	func TestEcho(t *testing.T) {
//		b := portiertest.NewBroker(t, portiertest.Service{Name: "echo", Role: "echo"})
//		c, err := b.Dial(t.Context(), "echo")
//		...
//	}
//
// It runs wherever the broker does: Linux, macOS and Windows (a named pipe
// there, and connections without half-close: end a request some other way
// than CloseWrite).
package portiertest
