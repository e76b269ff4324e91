package main

import (
	"bytes"
	"strings"
	"testing"
)

// Every way a command line can be wrong exits 2 (README: "2 bad usage or recipe"), for every
// command and subcommand, with one line on stderr that names what is wrong: the flag, the missing
// argument or the unknown command. None of these lines gets as far as touching an image or a
// guest, so the table runs each one for real, through run: runApp, then main's exit-code mapping.
func TestUsageErrorsExit2(t *testing.T) {
	tests := []struct {
		args string
		want string // in stderr
	}{
		// flags the command does not define, wherever they are written
		{"ingot inspect img --jsn", "flag provided but not defined: -jsn"},
		{"ingot inspect --jsn img", "flag provided but not defined: -jsn"},
		{"ingot validate r.yaml --frob", "flag provided but not defined: -frob"},
		{"ingot build --frob r.yaml", "flag provided but not defined: -frob"},
		{"ingot convert disk.qcow2 --to vmdk --frob", "flag provided but not defined: -frob"},
		{"ingot version --short", "flag provided but not defined: -short"},
		{"ingot recipes ls --json", "flag provided but not defined: -json"},
		{"ingot recipes show demo --json", "flag provided but not defined: -json"},
		{"ingot images ls --all", "flag provided but not defined: -all"},
		{"ingot images rm old --force", "flag provided but not defined: -force"},
		{"ingot cache prune --all", "flag provided but not defined: -all"},
		{"ingot --bogus", "flag provided but not defined: -bogus"},
		// a flag's value missing or malformed
		{"ingot convert disk.qcow2 --to", "flag needs an argument: -to"},
		{"ingot images rm --store", "flag needs an argument: -store"},
		{"ingot cache prune --work-dir", "flag needs an argument: -work-dir"},
		{"ingot build --jobs many r.yaml", `invalid value "many" for flag -jobs`},
		{"ingot inspect --json=maybe img", `invalid boolean value "maybe" for -json`},
		// a required flag left out
		{"ingot convert disk.qcow2 --out x", `Required flag "to" not set`},
		{"ingot convert --out x", `Required flag "to" not set`},
		// too few or too many positional arguments
		{"ingot inspect", "name one image file"},
		{"ingot inspect a.img b.img", "name one image file"},
		{"ingot convert --to vmdk", "name one image file"},
		{"ingot build", "name at least one recipe"},
		{"ingot validate", "name at least one recipe"},
		{"ingot images rm", "name at least one image"},
		{"ingot recipes show", "name one built-in recipe"},
		{"ingot recipes show demo debian-12", "name one built-in recipe"},
		{"ingot version now", `'ingot version' takes no arguments, got ["now"]`},
		{"ingot recipes ls demo", `'ingot recipes ls' takes no arguments, got ["demo"]`},
		{"ingot images ls old", `'ingot images ls' takes no arguments, got ["old"]`},
		{"ingot cache prune out", `'ingot cache prune' takes no arguments, got ["out"]`},
		// outputs that cannot all be made, refused before the image is even opened
		{"ingot convert disk.qcow2 --to raw+zstd+bmap,raw+xz+bmap", "--to raw+zstd+bmap and raw+xz+bmap: both write disk.raw.bmap"},
		// commands that do not exist, at each level
		{"ingot frobnicate", `no command "frobnicate"; see 'ingot --help'`},
		{"ingot recipes frobnicate", `no command "frobnicate"; see 'ingot recipes --help'`},
		{"ingot images frobnicate --store s", `no command "frobnicate"; see 'ingot images --help'`},
		{"ingot cache frobnicate", `no command "frobnicate"; see 'ingot cache --help'`},
		{"ingot help frobnicate", "No help topic for 'frobnicate'"},
		{"ingot recipes help frobnicate", "No help topic for 'frobnicate'"},
	}
	for _, tt := range tests {
		t.Run(tt.args, func(t *testing.T) {
			t.Setenv("XDG_CACHE_HOME", t.TempDir()) // should a line get further than it must
			var stdout, stderr bytes.Buffer
			code := run(strings.Fields(tt.args), &stdout, &stderr)
			if code != exitUsage {
				t.Errorf("exit code %d, want %d", code, exitUsage)
			}
			if !strings.Contains(stderr.String(), tt.want) {
				t.Errorf("stderr does not say %q:\n%s", tt.want, stderr.String())
			}
			if !strings.HasPrefix(stderr.String(), "ingot: ") || strings.Count(stderr.String(), "\n") != 1 {
				t.Errorf("stderr is not one line starting %q:\n%s", "ingot: ", stderr.String())
			}
			if strings.Contains(stdout.String(), "Incorrect Usage") {
				t.Errorf("the error went to stdout, with the help:\n%s", stdout.String())
			}
		})
	}
}
