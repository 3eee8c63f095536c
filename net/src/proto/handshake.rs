//! The decisions of making a link (ARCHITECTURE.md §4.4), without I/O: whether a peer's Hello
//! is one this node can work with (who may start authenticating, and who is refused for a
//! while, is `admission.rs`). The shell (`dial.rs`) does the reading, writing and waiting.

use crate::wire::{self, Msg, NodeId};
use thiserror::Error;

/// Who is at the other end, as its Hello says.
#[derive(Clone, Debug, PartialEq)]
pub struct Peer {
    pub node: NodeId,
    pub name: String,
    pub workers: u32,
}

/// Why a Hello does not make a link.
#[derive(Clone, Debug, Error, PartialEq)]
pub enum HelloError {
    #[error("expected Hello")]
    NotHello,
    #[error("internal: not a Hello")]
    NotOurs,
    /// Both versions named, so that whoever reads it knows which side to upgrade.
    #[error(
        "version mismatch: this node speaks protocol {ours_protocol} with compute ABI \
         {ours_abi}, the peer ({name}) protocol {protocol} with compute ABI {compute_abi}"
    )]
    VersionMismatch {
        ours_protocol: u32,
        ours_abi: u32,
        name: String,
        protocol: u32,
        compute_abi: u32,
    },
}

/// Checks the peer's first message against this node's Hello (`ours`): peers must speak the
/// same protocol and compute ABI exactly, or results could differ in the last bit. The peer's
/// name comes back cleaned ([`wire::sanitize`]): from here it names the link in logs, errors
/// and statistics.
pub fn check_hello(ours: &Msg, theirs: Msg) -> Result<Peer, HelloError> {
    let Msg::Hello {
        protocol,
        compute_abi,
        node,
        name,
        workers,
    } = theirs
    else {
        return Err(HelloError::NotHello);
    };
    let name = wire::sanitize(&name, wire::MAX_NAME);
    let Msg::Hello {
        protocol: ours_protocol,
        compute_abi: ours_abi,
        ..
    } = *ours
    else {
        return Err(HelloError::NotOurs);
    };
    if protocol != ours_protocol || compute_abi != ours_abi {
        return Err(HelloError::VersionMismatch {
            ours_protocol,
            ours_abi,
            name,
            protocol,
            compute_abi,
        });
    }
    Ok(Peer {
        node,
        name,
        workers,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hello(protocol: u32, compute_abi: u32) -> Msg {
        Msg::Hello {
            protocol,
            compute_abi,
            node: NodeId(7),
            name: "B".into(),
            workers: 4,
        }
    }

    #[test]
    fn a_hello_of_another_version_names_both() {
        let peer = check_hello(&hello(3, 8), hello(3, 8)).expect("same versions");
        assert_eq!((peer.node, peer.workers), (NodeId(7), 4));
        let e = check_hello(&hello(3, 8), hello(3, 9)).expect_err("another ABI");
        assert_eq!(
            e.to_string(),
            "version mismatch: this node speaks protocol 3 with compute ABI 8, \
             the peer (B) protocol 3 with compute ABI 9"
        );
        let members = Msg::Members(Vec::new());
        assert_eq!(
            check_hello(&hello(3, 8), members),
            Err(HelloError::NotHello)
        );
    }

    /// A name with a terminal escape and a newline is cleaned in the peer it gives, and in a
    /// version mismatch's words.
    #[test]
    fn a_hello_s_name_is_cleaned() {
        let named = |name: &str, abi| Msg::Hello {
            protocol: 3,
            compute_abi: abi,
            node: NodeId(7),
            name: name.into(),
            workers: 4,
        };
        let evil = "B\x1b[31m\nmillpond: error: fake";
        let peer = check_hello(&hello(3, 8), named(evil, 8)).expect("same versions");
        assert_eq!(peer.name, "B�[31m�millpond: error: fake");
        let e = check_hello(&hello(3, 8), named(evil, 9)).expect_err("another ABI");
        assert!(
            e.to_string()
                .contains("the peer (B�[31m�millpond: error: fake)"),
            "{e}"
        );
    }
}
