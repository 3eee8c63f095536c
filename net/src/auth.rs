//! Proving knowledge of the pool secret without sending it (ARCHITECTURE.md §4.2).
//!
//! SPAKE2 (symmetric, Ed25519 group) over the link's first stream. Both sides first take 32
//! bytes of TLS exporter keying material from their TLS session and put it into the SPAKE2
//! identity and into the HMAC key confirmation. A recording gives nothing to guess the secret
//! from offline (that is SPAKE2's property), and a relay in the middle — which necessarily
//! runs two different TLS sessions — ends up with two different exporter values, so the
//! confirmation fails on both sides.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use spake2::{Ed25519Group, Identity, Password, Spake2};

/// Exporter label (RFC 5705 style).
const EXPORTER_LABEL: &[u8] = b"EXPORTER-millpond-pool-spake2";
/// SPAKE2 message length for the Ed25519 group (1 byte side + 32 byte point).
const SPAKE2_MSG: usize = 33;
const CONFIRM: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("authentication failed")]
    Failed,
    #[error("authentication failed: {0}")]
    Transport(String),
}

/// Which end of the link we are; the two confirmations are labelled differently so that one
/// cannot be reflected back as the other.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Dialer,
    Acceptor,
}

fn confirmation(key: &[u8], label: &[u8], ekm: &[u8], a: &[u8], b: &[u8]) -> [u8; CONFIRM] {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    for part in [label, ekm, a, b] {
        mac.update(&(part.len() as u32).to_le_bytes());
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

/// Compares without an early exit, so timing tells nothing about where a guess went wrong.
fn constant_time_eq(a: &[u8; CONFIRM], b: &[u8; CONFIRM]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Runs the exchange on an open bidirectional stream. Returns the confirmed session key.
pub async fn authenticate(
    conn: &quinn::Connection,
    send: &mut quinn::SendStream,
    recv: &mut quinn::RecvStream,
    secret: &[u8],
    side: Side,
) -> Result<[u8; 32], AuthError> {
    let t = |e: &dyn std::fmt::Display| AuthError::Transport(e.to_string());
    let mut ekm = [0u8; 32];
    conn.export_keying_material(&mut ekm, EXPORTER_LABEL, b"")
        .map_err(|_| AuthError::Transport("no TLS exporter".into()))?;
    let mut id = b"millpond-pool-v1:".to_vec();
    id.extend_from_slice(&ekm);
    let (state, mine) =
        Spake2::<Ed25519Group>::start_symmetric(&Password::new(secret), &Identity::new(&id));
    send.write_all(&mine).await.map_err(|e| t(&e))?;
    let mut theirs = [0u8; SPAKE2_MSG];
    recv.read_exact(&mut theirs).await.map_err(|e| t(&e))?;
    let key = state.finish(&theirs).map_err(|_| AuthError::Failed)?;
    // Transcript in a fixed order: dialer's message first.
    let (a, b) = match side {
        Side::Dialer => (&mine[..], &theirs[..]),
        Side::Acceptor => (&theirs[..], &mine[..]),
    };
    let dialer = confirmation(&key, b"dialer", &ekm, a, b);
    let acceptor = confirmation(&key, b"acceptor", &ekm, a, b);
    let (my_confirm, their_confirm) = match side {
        Side::Dialer => (dialer, acceptor),
        Side::Acceptor => (acceptor, dialer),
    };
    // The dialer proves itself first; the acceptor answers only a correct proof.
    if side == Side::Dialer {
        send.write_all(&my_confirm).await.map_err(|e| t(&e))?;
    }
    let mut got = [0u8; CONFIRM];
    recv.read_exact(&mut got).await.map_err(|e| t(&e))?;
    if !constant_time_eq(&got, &their_confirm) {
        return Err(AuthError::Failed);
    }
    if side == Side::Acceptor {
        send.write_all(&my_confirm).await.map_err(|e| t(&e))?;
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(&key[..32]);
    Ok(out)
}
