package server

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
)

// AgentVersion is the agent's release version.
const AgentVersion = "0.1.0"

// APIVersion names the API package the agent serves.
const APIVersion = "confguest.agent.v1"

// DigestSuffix names the file beside the agent executable in which the image builder
// records the executable's SHA-256 ("/sbin/agent.sha256", in sha256sum's format). Both
// files lie on the dm-verity root, so the record is bound by the measured root hash as
// the executable is; reading it spares the guest hashing its own 11 MB binary through
// dm-verity on the first Version call, which took 0.5-0.9 s of the boot under TCG.
const DigestSuffix = ".sha256"

// executableDigest returns the hex SHA-256 of the executable at exe: the record beside
// it if there is one, else computed from the file.
func executableDigest(exe string) (string, error) {
	path, err := os.Readlink(exe) // /proc/self/exe names the file it was started from
	if err != nil {
		path = exe
	}
	record := path + DigestSuffix
	b, err := os.ReadFile(record)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fileDigest(exe)
	case err != nil:
		return "", fmt.Errorf("read %s: %w", record, err)
	}
	fields := strings.Fields(string(b))
	if len(fields) == 0 || len(fields[0]) != sha256.Size*2 {
		return "", fmt.Errorf("%s: want a hex SHA-256 as its first field: rebuild the image", record)
	}
	if _, err := hex.DecodeString(fields[0]); err != nil {
		return "", fmt.Errorf("%s: want a hex SHA-256 as its first field: rebuild the image", record)
	}
	return strings.ToLower(fields[0]), nil
}

// fileDigest returns the hex SHA-256 of the file at path.
func fileDigest(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("open %s: %w", path, err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("hash %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
