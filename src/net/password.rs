//! Password hashing with one reusable argon2 memory buffer per auth worker.
//!
//! argon2 fills 19 MiB of blocks per hash (the default parameters). Allocating them per hash
//! left the process's RSS at the allocator's mercy (glibc kept freed blocks in its arenas:
//! hundreds of MiB after the first logins). Each worker instead owns one buffer, allocated
//! once and reused by every hash and verification, so the memory argon2 costs is
//! `workers x 19 MiB`, whatever the allocator does and however many logins there are.

use argon2::password_hash::{Output, PasswordHash, SaltString, rand_core::OsRng};
use argon2::{Algorithm, Argon2, Block, Params, Version};

/// The largest argon2 memory a stored hash may ask for (256 MiB): a hash with a higher
/// memory cost is not ours (we write the default, 19 MiB) and fails to verify rather than
/// growing the buffer without bound.
const MAX_BLOCKS: usize = 256 * 1024;

/// Why a password could not be hashed (never expected with the default parameters).
#[derive(Debug, thiserror::Error)]
pub enum HashError {
    /// argon2 refused to hash.
    #[error("{0}")]
    Argon2(#[from] argon2::Error),
    /// The salt, parameters or output could not be put in a PHC string.
    #[error("{0}")]
    Phc(#[from] argon2::password_hash::Error),
}

/// One worker's argon2 hasher and its memory.
pub struct Passwords {
    blocks: Vec<Block>,
}

impl Default for Passwords {
    fn default() -> Self {
        Self {
            blocks: vec![Block::default(); Params::default().block_count()],
        }
    }
}

impl Passwords {
    /// The argon2id PHC string of `password` with a fresh salt (default parameters).
    pub fn hash(&mut self, password: &str) -> Result<String, HashError> {
        let salt = SaltString::generate(&mut OsRng);
        let params = Params::default();
        let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
        let mut salt_bytes = [0u8; 64];
        let salt_bytes = salt.decode_b64(&mut salt_bytes)?;
        let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
        argon2.hash_password_into_with_memory(
            password.as_bytes(),
            salt_bytes,
            &mut out,
            &mut self.blocks[..params.block_count()],
        )?;
        let hash = PasswordHash {
            algorithm: Algorithm::Argon2id.ident(),
            version: Some(Version::V0x13.into()),
            params: (&params).try_into()?,
            salt: Some(salt.as_salt()),
            hash: Some(Output::new(&out)?),
        };
        Ok(hash.to_string())
    }

    /// Whether `password` matches the PHC string `phc` (compared in constant time). A string
    /// that does not parse, or asks for more than 256 MiB, never matches.
    pub fn verify(&mut self, password: &str, phc: &str) -> bool {
        let Ok(hash) = PasswordHash::new(phc) else {
            return false;
        };
        let (Some(salt), Some(expected)) = (hash.salt, hash.hash) else {
            return false;
        };
        let Ok(algorithm) = Algorithm::try_from(hash.algorithm) else {
            return false;
        };
        let version = match hash.version.map(Version::try_from) {
            None => Version::default(),
            Some(Ok(version)) => version,
            Some(Err(_)) => return false,
        };
        let Ok(params) = Params::try_from(&hash) else {
            return false;
        };
        let blocks = params.block_count();
        if blocks > MAX_BLOCKS {
            tracing::error!(
                memory_kib = blocks,
                "a stored password hash asks for more argon2 memory than allowed; refused"
            );
            return false;
        }
        if self.blocks.len() < blocks {
            self.blocks.resize(blocks, Block::default());
        }
        let mut salt_bytes = [0u8; 64];
        let Ok(salt_bytes) = salt.decode_b64(&mut salt_bytes) else {
            return false;
        };
        let mut out = [0u8; Output::MAX_LENGTH];
        let out = &mut out[..expected.len()];
        let argon2 = Argon2::new(algorithm, version, params);
        if argon2
            .hash_password_into_with_memory(
                password.as_bytes(),
                salt_bytes,
                out,
                &mut self.blocks[..blocks],
            )
            .is_err()
        {
            return false;
        }
        Output::new(out).is_ok_and(|computed| computed == expected)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use argon2::password_hash::{PasswordHasher, PasswordVerifier};

    #[test]
    fn hashes_verify_both_ways_with_the_argon2_crate() {
        let mut passwords = Passwords::default();
        let ours = passwords.hash("correct horse").unwrap();
        assert!(
            ours.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{ours}"
        );
        assert!(passwords.verify("correct horse", &ours));
        assert!(!passwords.verify("wrong horse", &ours));
        let parsed = PasswordHash::new(&ours).unwrap();
        assert!(
            Argon2::default()
                .verify_password(b"correct horse", &parsed)
                .is_ok(),
            "the crate's own verifier accepts our hashes"
        );
        let salt = SaltString::generate(&mut OsRng);
        let theirs = Argon2::default()
            .hash_password(b"battery staple", &salt)
            .unwrap()
            .to_string();
        assert!(passwords.verify("battery staple", &theirs));
        assert!(!passwords.verify("battery stapler", &theirs));
    }

    #[test]
    fn other_parameters_verify_and_garbage_never_matches() {
        let params = Params::new(1024, 1, 1, None).unwrap();
        let salt = SaltString::generate(&mut OsRng);
        let small = Argon2::new(Algorithm::Argon2i, Version::V0x10, params)
            .hash_password(b"password1", &salt)
            .unwrap()
            .to_string();
        let mut passwords = Passwords::default();
        assert!(passwords.verify("password1", &small));
        assert!(!passwords.verify("password2", &small));
        assert!(!passwords.verify("password1", "not a phc string"));
        assert!(!passwords.verify("password1", "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHQ"));
        let huge = small.replace("m=1024", "m=4194304");
        assert!(!passwords.verify("password1", &huge), "over the memory cap");
    }
}
