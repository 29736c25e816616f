// Package servicedef owns service definition files: one TOML file per
// service, <dir>/<name>.toml, that tells the broker how to start the backend
// serving a service and which client versions that backend accepts.
//
// Parse turns one file into a Definition or into an *Error that names the
// file and the line of the offending key, with a message that says how to fix
// it. A Registry serves definitions out of a directory and picks up new and
// edited files on the very next Lookup (or, after CacheFor, on the first
// Lookup that long after the edit), without a restart and without a
// background goroutine.
//
// A definition file looks like this:
//
//	name = "echo"                    # must equal the file stem; [a-z0-9-]{1,64}
//	version = "1.0.0"                # the version this backend build serves
//	command = ["/usr/local/bin/echo-backend", "--flag"]  # command[0] absolute
//
//	# optional, with their defaults:
//	# dir = "/abs/path"              # working directory (default: inherited)
//	# handoff = true                 # false for activation = "listen-fds"
//	# activation = "portier"         # or "listen-fds" (systemd socket activation)
//	# idle_timeout = "10m"           # "0" = never stop an idle backend
//	# start_timeout = "10s"          # > 0 and <= 5m
//	# min_version = "1.0.0"          # accept wanted versions in [min_version, version]
//	# allow_versions = ["1.0.0"]     # or accept exactly the wanted versions listed
//
//	[env]                            # or env = { KEY = "value" }
//	RUST_LOG = "info"
package servicedef
