//! Proving knowledge of the pool secret without sending it (ARCHITECTURE.md §4.2).
//!
//! SPAKE2 (symmetric, Ed25519 group) over the link's first stream. Both sides first take 32
//! bytes of TLS exporter keying material from their TLS session and put it into the SPAKE2
//! identity and into the HMAC key confirmation. A recording gives nothing to guess the secret
//! from offline (that is SPAKE2's property), and a relay in the middle — which necessarily
//! runs two different TLS sessions — ends up with two different exporter values, so the
//! confirmation fails on both sides.
//!
//! The confirmations are HMAC-SHA256 from `ring`, and the peer's is checked with
//! `ring::hmac::verify`, which compares in constant time: how long a check takes tells
//! nothing about how much of a forged confirmation was right. The SPAKE2 key is zeroed when
//! dropped.

use ring::hmac;
use spake2::{Ed25519Group, Identity, Password, Spake2};
use zeroize::Zeroizing;

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

/// What a confirmation's MAC covers: the label, exporter bytes and both SPAKE2 messages,
/// each after its length (`u32`, little-endian).
fn transcript(label: &[u8], ekm: &[u8], a: &[u8], b: &[u8]) -> Zeroizing<Vec<u8>> {
    let mut out = Zeroizing::new(Vec::with_capacity(
        16 + label.len() + ekm.len() + 2 * SPAKE2_MSG,
    ));
    for part in [label, ekm, a, b] {
        out.extend_from_slice(&(part.len() as u32).to_le_bytes());
        out.extend_from_slice(part);
    }
    out
}

/// Runs the exchange on an open bidirectional stream; `Ok` once both sides proved they hold
/// the secret.
pub async fn authenticate(
    conn: &quinn::Connection,
    send: &mut quinn::SendStream,
    recv: &mut quinn::RecvStream,
    secret: &[u8],
    side: Side,
) -> Result<(), AuthError> {
    let t = |e: &dyn std::fmt::Display| AuthError::Transport(e.to_string());
    let mut ekm = Zeroizing::new([0u8; 32]);
    conn.export_keying_material(&mut *ekm, EXPORTER_LABEL, b"")
        .map_err(|_| AuthError::Transport("no TLS exporter".into()))?;
    let mut id = b"millpond-pool-v1:".to_vec();
    id.extend_from_slice(&*ekm);
    let (state, mine) =
        Spake2::<Ed25519Group>::start_symmetric(&Password::new(secret), &Identity::new(&id));
    send.write_all(&mine).await.map_err(|e| t(&e))?;
    let mut theirs = [0u8; SPAKE2_MSG];
    recv.read_exact(&mut theirs).await.map_err(|e| t(&e))?;
    let key = Zeroizing::new(state.finish(&theirs).map_err(|_| AuthError::Failed)?);
    let key = hmac::Key::new(hmac::HMAC_SHA256, &key);
    // Transcript in a fixed order: dialer's message first.
    let (a, b) = match side {
        Side::Dialer => (&mine[..], &theirs[..]),
        Side::Acceptor => (&theirs[..], &mine[..]),
    };
    let dialer = transcript(b"dialer", &*ekm, a, b);
    let acceptor = transcript(b"acceptor", &*ekm, a, b);
    let (mine, theirs) = match side {
        Side::Dialer => (dialer, acceptor),
        Side::Acceptor => (acceptor, dialer),
    };
    let my_confirm = hmac::sign(&key, &mine);
    // The dialer proves itself first; the acceptor answers only a correct proof.
    if side == Side::Dialer {
        send.write_all(my_confirm.as_ref())
            .await
            .map_err(|e| t(&e))?;
    }
    let mut got = [0u8; CONFIRM];
    recv.read_exact(&mut got).await.map_err(|e| t(&e))?;
    hmac::verify(&key, &theirs, &got).map_err(|_| AuthError::Failed)?;
    if side == Side::Acceptor {
        send.write_all(my_confirm.as_ref())
            .await
            .map_err(|e| t(&e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The confirmation is HMAC-SHA256 over the length-prefixed transcript (RFC 4231 case 2's
    /// key and output, so the change to `ring` kept the bytes on the wire), and a forged one
    /// is refused whether it differs in its first or its last byte.
    #[test]
    fn confirmations_are_hmac_sha256_checked_whole() {
        let key = hmac::Key::new(hmac::HMAC_SHA256, b"Jefe");
        let tag = hmac::sign(&key, b"what do ya want for nothing?");
        let want = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843";
        let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, want);
        let t = transcript(b"dialer", &[7; 32], &[1; SPAKE2_MSG], &[2; SPAKE2_MSG]);
        assert_eq!(&t[..4], &6u32.to_le_bytes());
        assert_eq!(t.len(), 4 * 4 + 6 + 32 + 2 * SPAKE2_MSG);
        let good = hmac::sign(&key, &t);
        assert!(hmac::verify(&key, &t, good.as_ref()).is_ok());
        for i in [0, CONFIRM - 1] {
            let mut forged = [0u8; CONFIRM];
            forged.copy_from_slice(good.as_ref());
            forged[i] ^= 1;
            assert!(hmac::verify(&key, &t, &forged).is_err());
        }
        assert!(hmac::verify(&key, &t, &good.as_ref()[..CONFIRM - 1]).is_err());
    }
}
