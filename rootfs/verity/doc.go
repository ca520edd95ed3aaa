// Package verity computes and checks dm-verity hash trees in the layout
// `veritysetup format --hash-offset=N FILE FILE` writes when data and hash
// tree share one file: SHA-256, 4096-byte data and hash blocks, format
// version 1 (each digest is sha256(salt || block)), the 512-byte on-disk
// superblock at the hash offset and the tree starting one hash block after
// it, top level first. The kernel's dm-verity target and veritysetup accept
// what Format writes; Verify checks every block in userspace.
//
// The leaf level (one digest per data block, nearly all the work) is hashed
// by one worker per CPU over large sequential reads; crypto/sha256 uses the
// CPU's SHA extensions where present.
//
// Determinism: the same data gives the same file bytes and Params. Unless
// the caller sets them, the salt is SHA-256("confguest verity salt v1\n" ||
// data area), padded data included, and the superblock UUID is the first 16
// bytes of SHA-256("confguest verity uuid v1\n" || root hash || salt) with
// the RFC 9562 version 8 bits set.
//
// A consumer builds the device-mapper table from Params:
//
//	0 <data_blocks*data_block_size/512> verity 1 <dev> <dev> 4096 4096 <data_blocks> <hash_offset/4096+1> sha256 <root_hash> <salt>
//
// (Params.Sectors and Params.Table).
package verity
