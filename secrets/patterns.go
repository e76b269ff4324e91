package secrets

// Pattern is a common credential's shape, which the scan looks for in the image's files whether
// or not the recipe declared it: a key or token a step copied in from somewhere else.
type Pattern struct {
	// Name is how findings, errors and secret_scan.allow name it.
	Name string
	// ERE is a POSIX extended regular expression (grep -E, LC_ALL=C): the guest's grep runs it.
	ERE string
	// Example is a made-up match, for the tests and docs/secrets.md.
	Example string
}

// Patterns are the credential patterns every scan uses (docs/secrets.md lists them). Each is
// anchored on a fixed prefix the credential's issuer documents, so that a build's binaries and
// compressed files do not match by chance.
func Patterns() []Pattern {
	return []Pattern{
		{"private-key", `-----BEGIN ((RSA|DSA|EC|OPENSSH|ENCRYPTED|PGP) )?PRIVATE KEY( BLOCK)?-----`, "-----BEGIN OPENSSH PRIVATE KEY-----"},
		{"aws-access-key", `(^|[^A-Za-z0-9])(AKIA|ASIA)[A-Z0-9]{16}([^A-Za-z0-9]|$)`, "aws_access_key_id = AKIAIOSFODNN7EXAMPLE"},
		{"github-token", `(ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9]{36}|github_pat_[A-Za-z0-9_]{82}`, "ghp_" + "0123456789abcdefghijABCDEFGHIJ012345"},
		{"gitlab-token", `glpat-[A-Za-z0-9_-]{20}`, "glpat-" + "0123456789abcdefABCD"},
		{"slack-token", `xox[abprs]-[A-Za-z0-9-]{10,}`, "xoxb-" + "1234567890-abcdefghij"},
		{"google-api-key", `AIza[A-Za-z0-9_-]{35}`, "AIza" + "SyA0123456789abcdefghijklmnopqrstuv"},
	}
}

// PatternNames lists the patterns' names, for errors and "did you mean".
func PatternNames() []string {
	ps := Patterns()
	names := make([]string, len(ps))
	for i, p := range ps {
		names[i] = p.Name
	}
	return names
}
