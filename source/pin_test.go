package source

import (
	"cmp"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const (
	sumA = "5f2d3c4b5a69788796a5b4c3d2e1f00112233445566778899aabbccddeeff001"
	sumB = "0000000000000000000000000000000000000000000000000000000000000abc"
	// sha512s, as Debian's SHA512SUMS lists them.
	sum512A = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef" +
		"fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210"
	sum512B = "0000000000000000000000000000000000000000000000000000000000000000" +
		"0000000000000000000000000000000000000000000000000000000000000def"
)

func TestParsePin(t *testing.T) {
	upper, upper512 := strings.ToUpper(sumA), strings.ToUpper(sum512A)
	tests := []struct {
		in       string
		algo     string
		digest   string
		sums     string
		wantErr  error
		errMatch string
	}{
		{in: sumA, algo: "sha256", digest: sumA},
		{in: upper, algo: "sha256", digest: sumA},
		{in: "sha256:" + sumA, algo: "sha256", digest: sumA},
		{in: "SHA256:" + upper, algo: "sha256", digest: sumA},
		{in: "  " + sumA + "\n", algo: "sha256", digest: sumA},
		{in: "sha512:" + sum512A, algo: "sha512", digest: sum512A},
		{in: "SHA512: " + upper512, algo: "sha512", digest: sum512A},
		{in: "file:https://example.org/SHA256SUMS", algo: "sha256", sums: "https://example.org/SHA256SUMS"},
		{in: "file:./SHA256SUMS", algo: "sha256", sums: "SHA256SUMS"},
		{in: "file:file:///srv/SHA256SUMS", algo: "sha256", sums: "/srv/SHA256SUMS"},
		{in: "sha256:file:/srv/SHA256SUMS", algo: "sha256", sums: "/srv/SHA256SUMS"},
		// What recipes.DiskSource.Pin passes for `sha512: file:…`.
		{in: "sha512:file:https://cloud.debian.org/images/cloud/bookworm/latest/SHA512SUMS", algo: "sha512",
			sums: "https://cloud.debian.org/images/cloud/bookworm/latest/SHA512SUMS"},
		{in: "Sha512: FILE: ./SHA512SUMS", algo: "sha512", sums: "SHA512SUMS"},
		{in: "", wantErr: ErrUnpinned},
		{in: sumA[:63], wantErr: ErrInvalidPin, errMatch: "63 characters (one digit short?), not the 64 hex digits of a sha256 (a sha256 has 64, a sha512 128)"},
		{in: sumA + "0", wantErr: ErrInvalidPin, errMatch: "65 characters (one digit too many?), not the 64"},
		{in: "sha512:" + sum512A[:127], wantErr: ErrInvalidPin, errMatch: "127 characters (one digit short?), not the 128 hex digits of a sha512"},
		// One digit short only when every character is a digit: otherwise it is not a digest at all.
		{in: strings.Repeat("g", 63), wantErr: ErrInvalidPin, errMatch: `"` + strings.Repeat("g", 63) + `" has 63 characters, not the 64`},
		{in: sumA[:16] + "O" + sumA[17:], wantErr: ErrInvalidPin, errMatch: `is not hexadecimal: 'O' (character 17) is not a hex digit`},
		{in: "sha256:" + sumA[:63] + "é", wantErr: ErrInvalidPin, errMatch: `is not hexadecimal: 'é' (character 64) is not a hex digit`},
		{in: strings.Repeat("a", 128), wantErr: ErrInvalidPin, errMatch: "(a sha512? write sha512:HEX)"},
		{in: "sha512:" + sumA, wantErr: ErrInvalidPin, errMatch: "(a sha256? write sha256:HEX), not the 128 hex digits of a sha512"},
		{in: "sha256:" + sum512A, wantErr: ErrInvalidPin, errMatch: "a sha512?"},
		{in: "sha512:", wantErr: ErrInvalidPin, errMatch: "0 characters"},
		{in: "sha512:" + strings.Repeat("g", 128), wantErr: ErrInvalidPin, errMatch: "not hexadecimal"},
		{in: strings.Repeat("g", 64), wantErr: ErrInvalidPin, errMatch: "not hexadecimal"},
		{in: "md5:d41d8cd98f00b204e9800998ecf8427e", wantErr: ErrInvalidPin, errMatch: "only sha256 and sha512"},
		{in: "sha3-512:" + sum512A, wantErr: ErrInvalidPin, errMatch: "not sha3-512"},
		{in: "file:", wantErr: ErrInvalidPin},
		{in: "sha512:file:", wantErr: ErrInvalidPin, errMatch: "names no checksum file"},
		{in: "file:ftp://example.org/SUMS", wantErr: ErrInvalidPin, errMatch: "unsupported scheme"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			p, err := parsePin(tt.in)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) || !strings.Contains(err.Error(), tt.errMatch) {
					t.Fatalf("parsePin error = %v, want %v containing %q", err, tt.wantErr, tt.errMatch)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			sums := ""
			if p.sums != nil {
				sums = p.sums.String()
			}
			if p.algo != tt.algo || p.digest != tt.digest || sums != tt.sums {
				t.Errorf("parsePin = %s %q, sums %q; want %s %q, %q", p.algo, p.digest, sums, tt.algo, tt.digest, tt.sums)
			}
		})
	}
}

func TestParseLocation(t *testing.T) {
	tests := []struct {
		in, local, url, err string
	}{
		{in: "https://cloud.debian.org/images/x.qcow2", url: "https://cloud.debian.org/images/x.qcow2"},
		{in: "HTTP://example.org/a", url: "http://example.org/a"},
		{in: "file:///var/lib/x.iso", local: "/var/lib/x.iso"},
		{in: "file://localhost/x.iso", local: "/x.iso"},
		{in: "images/../x.iso", local: "x.iso"},
		{in: "/abs/x.iso", local: "/abs/x.iso"},
		{in: "file://nas/x.iso", err: "another host"},
		{in: "s3://bucket/x", err: "unsupported scheme"},
		{in: "https:///nohost", err: "no host"},
		{in: "", err: "empty"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			l, err := parseLocation(tt.in)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("parseLocation error = %v, want one containing %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			switch {
			case tt.local != "" && (!l.local() || l.path != tt.local):
				t.Errorf("got %+v, want local path %s", l, tt.local)
			case tt.url != "" && (l.local() || l.url.String() != tt.url):
				t.Errorf("got %+v, want URL %s", l, tt.url)
			}
		})
	}
}

func TestLookupSum(t *testing.T) {
	const name = "debian-12-genericcloud-amd64.qcow2"
	tests := []struct {
		name, file string
		prefer     string // the pin's algorithm; "" is sha256
		want       string
		wantAlgo   string // of want; "" is sha256
		wantErr    error
		errMatch   string
	}{{
		name: "GNU text mode",
		file: sumB + "  debian-12-genericcloud-amd64.raw\n" + sumA + "  " + name + "\n",
		want: sumA,
	}, {
		name: "GNU binary mode (Ubuntu)",
		file: sumA + " *" + name + "\n" + sumB + " *other.img\n",
		want: sumA,
	}, {
		name: "dot-slash prefix and CRLF",
		file: sumA + "  ./" + name + "\r\n",
		want: sumA,
	}, {
		name: "upper-case hex",
		file: strings.ToUpper(sumA) + "  " + name + "\n",
		want: sumA,
	}, {
		name: "BSD tagged (Fedora CHECKSUM, clearsigned)",
		file: "-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256\n\n# " + name + ": 123 bytes\nSHA256 (" + name + ") = " + sumA + "\n-----BEGIN PGP SIGNATURE-----\nabc\n-----END PGP SIGNATURE-----\n",
		want: sumA,
	}, {
		name: "OpenSSL dgst",
		file: "SHA2-256(" + name + ")= " + sumA + "\nSHA256(x)= " + sumB + "\n",
		want: sumA,
	}, {
		name:     "SHA3-256 is not sha256",
		file:     "SHA3-256(" + name + ")= " + sumA + "\n",
		wantErr:  ErrNoSum,
		errMatch: "only with a sha3256 sum",
	}, {
		name: "BSD with spaces in the name",
		file: "SHA256 (my image.qcow2) = " + sumA + "\n",
		want: sumA,
	}, {
		name: "GNU escaped name",
		file: "\\" + sumA + "  back\\\\slash.img\n",
		want: sumA,
	}, {
		name: "entry in a subdirectory",
		file: sumA + "  ./amd64/" + name + "\n",
		want: sumA,
	}, {
		name: "exact name wins over a subdirectory entry",
		file: sumB + "  arm64/" + name + "\n" + sumA + "  " + name + "\n",
		want: sumA,
	}, {
		name:     "subdirectory entries disagree",
		file:     sumB + "  arm64/" + name + "\n" + sumA + "  amd64/" + name + "\n",
		wantErr:  ErrNoSum,
		errMatch: "different sha256 sums",
	}, {
		name:     "not listed",
		file:     sumA + "  other.qcow2\n",
		wantErr:  ErrNoSum,
		errMatch: "no line names",
	}, {
		name:     "only md5",
		file:     "d41d8cd98f00b204e9800998ecf8427e  " + name + "\n",
		wantErr:  ErrNoSum,
		errMatch: "only with a md5 sum; use the SHA256SUMS or SHA512SUMS file",
	}, {
		name:     "Debian SHA512SUMS, sha512 pin",
		file:     sum512B + "  debian-12-genericcloud-amd64.raw\n" + sum512A + "  " + name + "\n",
		prefer:   "sha512",
		want:     sum512A,
		wantAlgo: "sha512",
	}, {
		// A plain file: pin on a SHA512SUMS: the only entry there is, is used.
		name:     "Debian SHA512SUMS, sha256 pin falls back to sha512",
		file:     sum512B + "  debian-12-genericcloud-amd64.raw\n" + sum512A + "  " + name + "\n",
		want:     sum512A,
		wantAlgo: "sha512",
	}, {
		name:     "sha512 pin falls back to sha256",
		file:     sumA + "  " + name + "\n",
		prefer:   "sha512",
		want:     sumA,
		wantAlgo: "sha256",
	}, {
		name:     "BSD sha512 only",
		file:     "SHA512 (" + name + ") = " + strings.ToUpper(sum512A) + "\n",
		want:     sum512A,
		wantAlgo: "sha512",
	}, {
		name:     "both listed, sha512 pin takes sha512",
		file:     "SHA256 (" + name + ") = " + sumA + "\nSHA512 (" + name + ") = " + sum512A + "\n",
		prefer:   "sha512",
		want:     sum512A,
		wantAlgo: "sha512",
	}, {
		name:     "both listed, sha256 pin takes sha256",
		file:     "SHA512 (" + name + ") = " + sum512A + "\nSHA256 (" + name + ") = " + sumA + "\n",
		want:     sumA,
		wantAlgo: "sha256",
	}, {
		// How precisely the name matched counts before which algorithm the pin prefers.
		name:     "exact sha256 wins over a subdirectory sha512",
		file:     sum512A + "  amd64/" + name + "\n" + sumA + "  " + name + "\n",
		prefer:   "sha512",
		want:     sumA,
		wantAlgo: "sha256",
	}, {
		name:     "sha512 entries disagree",
		file:     sum512A + "  " + name + "\n" + sum512B + "  ./" + name + "\n",
		prefer:   "sha512",
		wantErr:  ErrNoSum,
		errMatch: "different sha512 sums",
	}, {
		name:     "BSD SHA512 tag on a sha256-long digest",
		file:     "SHA512 (" + name + ") = " + sumA + "\n",
		prefer:   "sha512",
		wantErr:  ErrInvalidPin,
		errMatch: "entry for " + name,
	}, {
		name:    "prefix of another name does not match",
		file:    sumA + "  " + name + ".sig\n",
		wantErr: ErrNoSum,
	}, {
		name:    "empty file",
		wantErr: ErrNoSum,
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lookFor := name
			if strings.Contains(tt.file, "my image") {
				lookFor = "my image.qcow2"
			} else if strings.Contains(tt.file, "slash") {
				lookFor = `back\slash.img`
			}
			got, err := lookupSum([]byte(tt.file), lookFor, cmp.Or(tt.prefer, "sha256"))
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) || !strings.Contains(err.Error(), tt.errMatch) {
					t.Fatalf("lookupSum error = %v, want %v containing %q", err, tt.wantErr, tt.errMatch)
				}
				return
			}
			if want := (digest{algo: cmp.Or(tt.wantAlgo, "sha256"), hex: tt.want}); err != nil || got != want {
				t.Fatalf("lookupSum = %v, %v; want %v", got, err, want)
			}
		})
	}
}

func TestParseContentRange(t *testing.T) {
	tests := []struct {
		in           string
		start, total int64
		ok           bool
	}{
		{"bytes 100-199/200", 100, 200, true},
		{"bytes 0-0/1", 0, 0 + 1, true},
		{"bytes 5-9/*", 5, -1, true},
		{"bytes 100-199/150", 0, 0, false},
		{"bytes 9-5/10", 0, 0, false},
		{"bytes */200", 0, 0, false},
		{"items 1-2/3", 0, 0, false},
		{"", 0, 0, false},
	}
	for _, tt := range tests {
		start, total, ok := parseContentRange(tt.in)
		if start != tt.start || total != tt.total || ok != tt.ok {
			t.Errorf("parseContentRange(%q) = %d, %d, %v; want %d, %d, %v", tt.in, start, total, ok, tt.start, tt.total, tt.ok)
		}
	}
	if total, ok := parseUnsatisfiedRange("bytes */4096"); !ok || total != 4096 {
		t.Errorf("parseUnsatisfiedRange = %d, %v; want 4096, true", total, ok)
	}
}

func TestFetchWithChecksumFile(t *testing.T) {
	data, sum := payload(50 << 10)
	const name = "noble-server-cloudimg-amd64.img"
	sums := sumB + " *other.img\n" + sum + " *" + name + "\n"
	var payloadRequests int
	srv := newServer(t, func(_ int, w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/current/SHA256SUMS":
			w.Write([]byte(sums))
		case "/current/" + name:
			payloadRequests++
			serveFile(w, r, data)
		default:
			http.NotFound(w, r)
		}
	})
	f, _ := newFetcher(t, "")
	in := Input{URL: srv.URL + "/current/" + name, SHA256: "file:" + srv.URL + "/current/SHA256SUMS"}

	got, err := f.Resolve(t.Context(), in)
	if err != nil || got != sum {
		t.Fatalf("Resolve = %q, %v; want %q", got, err, sum)
	}
	if payloadRequests != 0 {
		t.Errorf("Resolve downloaded the input itself (%d requests)", payloadRequests)
	}
	path, err := f.Fetch(t.Context(), in)
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Base(path) != sum {
		t.Errorf("Fetch = %s, want the entry for %s", path, sum)
	}

	// A checksum file that does not list the input.
	_, err = f.Fetch(t.Context(), Input{URL: srv.URL + "/current/missing.img", SHA256: in.SHA256})
	if !errors.Is(err, ErrNoSum) || !strings.Contains(err.Error(), "missing.img") {
		t.Errorf("Fetch error = %v, want ErrNoSum naming missing.img", err)
	}
	// A checksum file that is not there.
	_, err = f.Resolve(t.Context(), Input{URL: in.URL, SHA256: "file:" + srv.URL + "/nope/SHA256SUMS"})
	if err == nil || !strings.Contains(err.Error(), "404") {
		t.Errorf("Resolve error = %v, want a 404", err)
	}
}

func TestFetchChecksumFileMismatch(t *testing.T) {
	data, actual := payload(10 << 10)
	dir := t.TempDir()
	sumsPath := filepath.Join(dir, "SHA256SUMS")
	if err := os.WriteFile(sumsPath, []byte(sumA+"  img.qcow2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	srv := newServer(t, func(_ int, w http.ResponseWriter, r *http.Request) { serveFile(w, r, data) })
	f, _ := newFetcher(t, "")
	_, err := f.Fetch(t.Context(), Input{URL: srv.URL + "/img.qcow2", SHA256: "file:" + sumsPath})
	var mm *MismatchError
	if !errors.As(err, &mm) || mm.ChecksumFile != sumsPath || mm.Actual != actual || mm.Expected != sumA {
		t.Fatalf("Fetch error = %#v, want a MismatchError naming %s", err, sumsPath)
	}
	if !strings.Contains(err.Error(), sumsPath) {
		t.Errorf("error %q does not name the checksum file", err)
	}
}
