package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/ingot-build/ingot/internal/progress"
	"github.com/ingot-build/ingot/oci"
	"github.com/ingot-build/ingot/sign"
)

// registryFlags are the flags push and pull share. Credentials have none on purpose: they come
// from the Docker config file or the environment (docs/oci.md), never the command line.
func registryFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringSliceFlag{Name: "insecure-registry", Usage: "allow plain HTTP to `HOST` (or HOST:PORT), with a warning; loopback registries need no flag"},
	}
}

// remoteFor is the oci.Remote of a command: its --insecure-registry hosts, its log.
func remoteFor(c *cli.Context, out *output) (oci.Remote, error) {
	insecure := c.StringSlice("insecure-registry")
	if err := oci.CheckInsecure(insecure); err != nil {
		return oci.Remote{}, usageError{fmt.Errorf("--insecure-registry: %w", err)}
	}
	return oci.Remote{Insecure: insecure, Log: out.Log, UserAgent: "ingot/" + version}, nil
}

// checkCredentials reports credentials set up wrong (a user without a password) as bad usage,
// before anything is sent.
func checkCredentials(remote oci.Remote, ref string) error {
	r, err := oci.ParseRef(ref)
	if err != nil {
		return usageError{err}
	}
	if _, _, err := remote.Credentials(r.Registry); err != nil {
		return usageError{err}
	}
	return nil
}

// pushCommand is `ingot push DIR oci://REGISTRY/REPO:TAG`: the build in DIR as one OCI artifact
// (docs/oci.md). It prints the pushed reference with its digest, what `ingot pull` takes.
func pushCommand() *cli.Command {
	return &cli.Command{
		Name:  "push",
		Usage: "push a build's output directory to an OCI registry",
		Description: "DIR is a build's output directory (it holds manifest.json and SHA256SUMS). Every file in it goes up as\n" +
			"a layer of one OCI artifact tagged TAG, with a config that carries the platform; the records (manifest,\n" +
			"SHA256SUMS, SBOM, provenance, signatures) are also attached as referrers where the registry has the\n" +
			"referrers API. Blobs already in the registry are skipped, so an interrupted push can be run again.\n" +
			"Credentials: INGOT_REGISTRY_USER and INGOT_REGISTRY_PASSWORD, or the Docker config file\n" +
			"($DOCKER_CONFIG/config.json, ~/.docker/config.json). Prints oci://REGISTRY/REPO@sha256:… on stdout.\n" +
			"Exit codes: 0 pushed, 1 the push failed, 2 bad usage. See docs/oci.md.",
		ArgsUsage: "DIR oci://REGISTRY/REPO:TAG",
		Flags: append([]cli.Flag{
			&cli.BoolFlag{Name: "containerdisk", Usage: "also push a KubeVirt containerDisk of the qcow2 output, tagged TAG-containerdisk"},
			&cli.StringFlag{Name: "referrers", Value: string(oci.ReferrersAuto), Usage: "attach the records as referrers: auto (where the registry has the API), tags (else by the referrers tag schema), off"},
		}, registryFlags()...),
		Action: func(c *cli.Context) error {
			if c.NArg() != 2 {
				return usageError{errors.New("name a build's output directory and where to push it: DIR oci://REGISTRY/REPO:TAG")}
			}
			dir, ref := c.Args().Get(0), c.Args().Get(1)
			if _, err := oci.ParseRef(ref); err != nil {
				return usageError{err}
			}
			if st, err := os.Stat(dir); err != nil || !st.IsDir() {
				return usageError{fmt.Errorf("%s is not a directory", dir)}
			}
			mode := oci.ReferrersMode(c.String("referrers"))
			switch mode {
			case oci.ReferrersAuto, oci.ReferrersTagSchema, oci.ReferrersOff:
			default:
				return usageError{fmt.Errorf("--referrers %q: want auto, tags or off", mode)}
			}
			out, err := newOutput(c.App.ErrWriter, "text", false, os.Getenv)
			if err != nil {
				return err
			}
			defer out.Close()
			remote, err := remoteFor(c, out)
			if err != nil {
				return err
			}
			if err := checkCredentials(remote, ref); err != nil {
				return err
			}
			res, err := pushBuild(c.Context, dir, ref, oci.PushOptions{
				Remote: remote, ContainerDisk: c.Bool("containerdisk"), Referrers: mode, Progress: out.Progress,
			})
			out.Close()
			if err != nil {
				return err
			}
			fmt.Fprintln(c.App.Writer, res.Build.Digested())
			if res.ContainerDisk != nil {
				fmt.Fprintf(c.App.ErrWriter, "ingot: containerDisk %s@%s\n", res.ContainerDisk.Ref, res.ContainerDisk.Digest)
			}
			return nil
		},
	}
}

// pushBuild is the push of `ingot push` and of `ingot build --push`: a push that fails is
// an error of the command (exit 1), with what was being pushed where.
func pushBuild(ctx context.Context, dir, ref string, opts oci.PushOptions) (*oci.PushResult, error) {
	res, err := oci.PushBuild(ctx, dir, ref, opts)
	if err != nil {
		return nil, fmt.Errorf("push %s to %s: %w", dir, ref, err)
	}
	return res, nil
}

// pullCommand is `ingot pull oci://…@sha256:… --out DIR [--pubkey FILE]`.
func pullCommand() *cli.Command {
	return &cli.Command{
		Name:  "pull",
		Usage: "pull a build from an OCI registry by digest, verified, into a new directory",
		Description: "Fetches the build that `ingot push` pushed, by its digest, into a private staging directory beside\n" +
			"DIR, checking every blob against its digest, SHA256SUMS against the files and manifest.json against\n" +
			"SHA256SUMS; with --pubkey, also the signatures and records as `ingot verify` checks them. Only then is\n" +
			"the staging directory renamed to DIR (which must not exist, or be empty): a pull that fails publishes\n" +
			"nothing. Exit codes: 0 pulled and verified, 1 a check or the transfer failed, 2 bad usage.",
		ArgsUsage: "oci://REGISTRY/REPO@sha256:…",
		Flags: append([]cli.Flag{
			&cli.StringFlag{Name: "out", Required: true, Usage: "the directory to create, `DIR`"},
			&cli.StringFlag{Name: "pubkey", Usage: "verify the signatures with the minisign public key `FILE`"},
		}, registryFlags()...),
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return usageError{errors.New("name one build to pull: oci://REGISTRY/REPO@sha256:…")}
			}
			ref := c.Args().First()
			r, err := oci.ParseRef(ref)
			if err != nil {
				return usageError{err}
			}
			if r.Digest() == "" {
				return usageError{fmt.Errorf("%s: pull by digest, oci://REGISTRY/REPO@sha256:… (ingot push prints it)", ref)}
			}
			opts := oci.PullOptions{}
			if path := c.String("pubkey"); path != "" {
				pub, err := sign.LoadPublicKey(path)
				if err != nil {
					return usageError{fmt.Errorf("--pubkey: %w", err)}
				}
				opts.Verify = func(ctx context.Context, dir string) error {
					rep, err := sign.VerifyDir(ctx, dir, pub)
					if err != nil {
						return err
					}
					if !rep.OK() {
						msgs := make([]string, len(rep.Problems))
						for i, p := range rep.Problems {
							msgs[i] = p.Error()
						}
						return fmt.Errorf("signatures: %d problem(s): %s", len(msgs), strings.Join(msgs, "; "))
					}
					return nil
				}
			}
			out, err := newOutput(c.App.ErrWriter, "text", false, os.Getenv)
			if err != nil {
				return err
			}
			defer out.Close()
			if opts.Remote, err = remoteFor(c, out); err != nil {
				return err
			}
			if err := checkCredentials(opts.Remote, ref); err != nil {
				return err
			}
			if entries, err := os.ReadDir(c.String("out")); err == nil && len(entries) > 0 {
				return usageError{fmt.Errorf("--out %s exists and is not empty: pull into a new directory", c.String("out"))}
			}
			opts.Progress = out.Progress
			res, err := oci.Pull(c.Context, ref, c.String("out"), opts)
			out.Close()
			if err != nil {
				return fmt.Errorf("pull %s: %w; nothing was published", ref, err)
			}
			w := c.App.Writer
			fmt.Fprintf(w, "%s: pulled %s\n", res.Dir, ref)
			fmt.Fprintf(w, "  platform    %s/%s\n", res.Config.OS, res.Config.Architecture)
			fmt.Fprintf(w, "  files       %d, %s, each with its digest\n", len(res.Files), progress.Bytes(res.Bytes))
			fmt.Fprintf(w, "  SHA256SUMS  %d file(s) as listed; manifest.json's outputs agree\n", res.Summed)
			if opts.Verify != nil {
				fmt.Fprintf(w, "  signatures  verified with %s\n", c.String("pubkey"))
			} else {
				fmt.Fprintf(w, "  signatures  not checked (no --pubkey)\n")
			}
			return nil
		},
	}
}
