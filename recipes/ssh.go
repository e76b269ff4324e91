package recipes

import "regexp"

var userRE = regexp.MustCompile(`^[a-z_][a-z0-9_-]{0,31}$`)

// ssh reads ssh:, how ingot reaches the guest, with its defaults.
func (d *decoder) ssh(top *fields) SSH {
	s := SSH{User: DefaultSSHUser, Timeout: DefaultSSHTimeout}
	f, ok := d.sub(top, "ssh", yamlKeys[SSH]())
	if !ok {
		return s
	}
	if n, ok := f.get("user"); ok {
		if u, ok := d.nonEmpty(f.child("user"), n); ok {
			switch {
			case u == "root":
				d.errorf(d.at(n), f.child("user"), "ingot creates the build user with sudo rights and removes it when generalizing; name an account that does not exist in the image", "cannot be root")
			case !userRE.MatchString(u):
				d.errorf(d.at(n), f.child("user"), "use up to 32 of a-z, 0-9, '_' and '-', starting with a letter or '_'", "%q is not a valid user name", u)
			default:
				s.User = u
			}
		}
	}
	d.timeout(f, "timeout", "the default of "+fmtDuration(DefaultSSHTimeout), &s.Timeout)
	return s
}
