// Command nnp prints its effective user ID. Installed setuid root in the conformance
// harness's nonewprivs image (as in Kubernetes' e2e image of that name), it shows whether
// the runtime let the setuid bit raise the privileges: "Effective uid: 0" when it did,
// the caller's UID under no_new_privs.
package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Printf("Effective uid: %d\n", os.Geteuid())
}
