//! The Hyperlane contracts' calls tephra makes, and their creation code from
//! the pinned npm package (contracts/hyperlane, `@hyperlane-xyz/core`
//! 12.1.0). The interfaces below are the contracts' own signatures, written
//! out for the ABI encoder; the code is deployed unchanged.

use alloy_primitives::Bytes;
use alloy_sol_types::sol;

sol! {
    interface IMailbox {
        function initialize(address _owner, address _defaultIsm, address _defaultHook, address _requiredHook);
        function dispatch(uint32 destinationDomain, bytes32 recipientAddress, bytes messageBody) payable returns (bytes32);
        function process(bytes _metadata, bytes _message) payable;
        function delivered(bytes32 _id) view returns (bool);
        function localDomain() view returns (uint32);
        function recipientIsm(address _recipient) view returns (address);
    }

    interface IMerkleTreeHook {
        function root() view returns (bytes32);
        function count() view returns (uint32);
    }

    interface IStaticMessageIdMultisigIsmFactory {
        function getAddress(address[] _values, uint8 _threshold) view returns (address);
        function deploy(address[] _values, uint8 _threshold) returns (address);
    }

    interface IMultisigIsm {
        function validatorsAndThreshold(bytes _message) view returns (address[] validators, uint8 threshold);
    }

    interface IValidatorAnnounce {
        function announce(address _validator, string _storageLocation, bytes _signature) returns (bool);
        function getAnnouncedStorageLocations(address[] _validators) view returns (string[][]);
    }

    interface ITestRecipient {
        function lastData() view returns (bytes);
        function setInterchainSecurityModule(address _ism);
    }
}

/// A contract of the package.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Contract {
    Mailbox,
    MerkleTreeHook,
    PausableHook,
    StaticMessageIdMultisigIsmFactory,
    ValidatorAnnounce,
    TestRecipient,
}

impl Contract {
    fn artifact(self) -> &'static str {
        match self {
            Contract::Mailbox => include_str!("../../contracts/hyperlane/Mailbox.json"),
            Contract::MerkleTreeHook => include_str!("../../contracts/hyperlane/MerkleTreeHook.json"),
            Contract::PausableHook => include_str!("../../contracts/hyperlane/PausableHook.json"),
            Contract::StaticMessageIdMultisigIsmFactory => {
                include_str!("../../contracts/hyperlane/StaticMessageIdMultisigIsmFactory.json")
            }
            Contract::ValidatorAnnounce => include_str!("../../contracts/hyperlane/ValidatorAnnounce.json"),
            Contract::TestRecipient => include_str!("../../contracts/hyperlane/TestRecipient.json"),
        }
    }

    /// The creation code, constructor arguments not included.
    pub fn creation_code(self) -> Bytes {
        let artifact: serde_json::Value = serde_json::from_str(self.artifact()).expect("a committed artifact is JSON");
        let code = artifact["bytecode"].as_str().expect("a committed artifact has its bytecode");
        code.parse().expect("a committed artifact's bytecode is hex")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_artifact_has_creation_code() {
        for contract in [
            Contract::Mailbox,
            Contract::MerkleTreeHook,
            Contract::PausableHook,
            Contract::StaticMessageIdMultisigIsmFactory,
            Contract::ValidatorAnnounce,
            Contract::TestRecipient,
        ] {
            // solc's creation code starts by setting the free memory
            // pointer: PUSH1 <pointer> PUSH1 0x40 MSTORE.
            let code = contract.creation_code();
            assert_eq!((code[0], &code[2..5]), (0x60, &[0x60, 0x40, 0x52][..]), "{contract:?}");
        }
    }
}
