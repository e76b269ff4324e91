package oci

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"

	"oras.land/oras-go/v2/registry/remote"
	"oras.land/oras-go/v2/registry/remote/auth"
	"oras.land/oras-go/v2/registry/remote/credentials"
	"oras.land/oras-go/v2/registry/remote/retry"
)

// Environment variables that carry registry credentials. Both or neither: a user without a
// password (or the reverse) is a mistake, not anonymous access.
const (
	EnvUser     = "INGOT_REGISTRY_USER"
	EnvPassword = "INGOT_REGISTRY_PASSWORD"
)

// Remote says how to reach a registry. Its zero value talks TLS, verified against the system's
// roots, with the credentials Credentials finds.
type Remote struct {
	// Insecure lists the registries (HOST or HOST:PORT, as --insecure-registry gives them) that
	// may be reached over plain HTTP. Each use is logged as a warning. Loopback registries need
	// no entry (see PlainHTTP).
	Insecure []string
	// Transport carries the requests; nil is a clone of http.DefaultTransport. Tests count
	// requests through it. Whatever it is, oras-go's retry transport wraps it.
	Transport http.RoundTripper
	// Getenv reads the environment for credentials and the Docker config's place; nil is
	// os.Getenv.
	Getenv func(string) string
	// Log receives what is worth knowing (where credentials came from, never what they are;
	// plain-HTTP warnings). nil discards.
	Log *slog.Logger
	// UserAgent is sent with every request; "" is "ingot".
	UserAgent string
}

func (r *Remote) log() *slog.Logger {
	if r.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return r.Log
}

func (r *Remote) getenv(k string) string {
	if r.Getenv == nil {
		return os.Getenv(k)
	}
	return r.Getenv(k)
}

// PlainHTTP says whether host (HOST or HOST:PORT) may be reached over plain HTTP, and whether
// that deserves a warning. Loopback registries (localhost, 127.0.0.0/8, ::1) may, silently: the
// traffic never leaves the machine, and a registry started for tests or a local mirror has no
// certificate. Any other host may only when insecure names it, by host or host:port, and each use
// warns. Everything else is HTTPS with the certificate verified; there is no switch to skip that.
func PlainHTTP(host string, insecure []string) (plain, warn bool) {
	name := host
	if h, _, err := net.SplitHostPort(host); err == nil {
		name = h
	}
	name = strings.TrimSuffix(strings.TrimPrefix(name, "["), "]")
	if strings.EqualFold(name, "localhost") {
		return true, false
	}
	if ip := net.ParseIP(name); ip != nil && ip.IsLoopback() {
		return true, false
	}
	for _, h := range insecure {
		if strings.EqualFold(h, host) || strings.EqualFold(h, name) {
			return true, true
		}
	}
	return false, false
}

// CheckInsecure refuses --insecure-registry values that are not a HOST or HOST:PORT: a URL there
// ("http://reg") would never match and silently change nothing.
func CheckInsecure(hosts []string) error {
	for _, h := range hosts {
		if h == "" || strings.ContainsAny(h, "/@ ") || strings.Contains(h, "://") {
			return fmt.Errorf("insecure registry %q: want HOST or HOST:PORT, without a scheme or path", h)
		}
	}
	return nil
}

// Credentials finds the credentials for registry host and says where they came from (for the
// log: never the credentials themselves):
//  1. INGOT_REGISTRY_USER and INGOT_REGISTRY_PASSWORD, when both are set, for this registry;
//  2. the Docker config file, $DOCKER_CONFIG/config.json or else ~/.docker/config.json, with
//     its credential helpers (credsStore, credHelpers) as docker login leaves them;
//  3. none: anonymous.
//
// Never the command line, where other users see them in ps and shells keep them in history.
func (r *Remote) Credentials(host string) (auth.CredentialFunc, string, error) {
	user, pass := r.getenv(EnvUser), r.getenv(EnvPassword)
	switch {
	case user != "" && pass != "":
		return auth.StaticCredential(host, auth.Credential{Username: user, Password: pass}), "environment (" + EnvUser + ")", nil
	case user != "" || pass != "":
		return nil, "", fmt.Errorf("credentials: set both %s and %s, or neither", EnvUser, EnvPassword)
	}
	path, err := r.dockerConfig()
	if err != nil {
		return nil, "", err
	}
	if path == "" {
		return nil, "none (anonymous)", nil
	}
	store, err := credentials.NewStore(path, credentials.StoreOptions{})
	if err != nil {
		return nil, "", fmt.Errorf("credentials: read Docker config %s: %w", path, err)
	}
	return credentials.Credential(store), "Docker config " + path, nil
}

// dockerConfig is the Docker config file Docker itself would read, "" when there is none.
func (r *Remote) dockerConfig() (string, error) {
	var path string
	if dir := r.getenv("DOCKER_CONFIG"); dir != "" {
		path = filepath.Join(dir, "config.json")
	} else {
		home := r.getenv("HOME")
		if home == "" {
			return "", nil
		}
		path = filepath.Join(home, ".docker", "config.json")
	}
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		return "", nil
	} else if err != nil {
		return "", fmt.Errorf("credentials: %w", err)
	}
	return path, nil
}

// repository returns the client of ref's repository: oras-go's authenticating client over its
// retry transport, over r.Transport.
func (r *Remote) repository(ref Ref) (*remote.Repository, error) {
	host := ref.Registry
	plain, warn := PlainHTTP(host, r.Insecure)
	if warn {
		r.log().Warn("plain HTTP to a registry that is not on loopback: anyone on the network can read and change what is sent", "registry", host)
	}
	cred, source, err := r.Credentials(host)
	if err != nil {
		return nil, err
	}
	r.log().Debug("registry credentials", "registry", host, "from", source)
	base := r.Transport
	if base == nil {
		base = http.DefaultTransport.(*http.Transport).Clone()
	}
	ua := r.UserAgent
	if ua == "" {
		ua = "ingot"
	}
	client := &auth.Client{
		Client:     &http.Client{Transport: retry.NewTransport(base)},
		Cache:      auth.NewCache(),
		Credential: cred,
		Header:     http.Header{"User-Agent": {ua}},
	}
	repo := &remote.Repository{Client: client, Reference: ref.Reference, PlainHTTP: plain}
	return repo, nil
}

// scoped adds the repository's pull and push scopes to ctx, for requests this package makes on
// its own through the repository's client (the chunked upload).
func scoped(ctx context.Context, ref Ref, actions ...string) context.Context {
	return auth.AppendRepositoryScope(ctx, ref.Reference, actions...)
}
