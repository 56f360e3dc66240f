// SPDX-License-Identifier: MIT
// OptimismPortal2's deposit path alone, for tephra's L1 tests: the same
// TransactionDeposited event with the same opaqueData packing, the same
// checks and the same sender aliasing, so that what tephra-l1 derives from
// its logs is what it derives from a real portal's. Left out: the resource
// metering (gas burnt on L1 for the L2 gas bought), withdrawals, pausing,
// custom gas tokens and the ETH lockbox, none of which changes the event.
pragma solidity 0.8.30;

contract DepositPortal {
    /// The version (topic 3) of the opaqueData encoding below.
    uint256 internal constant DEPOSIT_VERSION = 0;

    /// The L2 gas limit of a deposit made by sending ETH to the portal.
    uint64 internal constant RECEIVE_DEFAULT_GAS_LIMIT = 100_000;

    /// The largest deposit calldata: unsafe blocks stay under the p2p
    /// network's 128 KB policy.
    uint256 internal constant CALLDATA_BYTES_MAX = 120_000;

    /// OptimismPortal's event, byte for byte: opaqueData is
    /// abi.encodePacked(uint256 mint, uint256 value, uint64 gasLimit,
    /// bool isCreation, bytes data).
    event TransactionDeposited(address indexed from, address indexed to, uint256 indexed version, bytes opaqueData);

    error BadTarget();
    error GasLimitTooLow();
    error CalldataTooLarge();

    /// ETH sent to the portal is deposited to the sender's own L2 account.
    receive() external payable {
        depositTransaction(msg.sender, msg.value, RECEIVE_DEFAULT_GAS_LIMIT, false, bytes(""));
    }

    /// Deposits an L2 transaction: `msg.value` is minted to the sender on L2,
    /// then `_value` of it sent to `_to` (or a contract created from `_data`).
    function depositTransaction(
        address _to,
        uint256 _value,
        uint64 _gasLimit,
        bool _isCreation,
        bytes memory _data
    ) public payable {
        if (_isCreation && _to != address(0)) revert BadTarget();
        if (_gasLimit < minimumGasLimit(uint64(_data.length))) revert GasLimitTooLow();
        if (_data.length > CALLDATA_BYTES_MAX) revert CalldataTooLarge();

        // A contract's L1 address is not its L2 address: the sender is aliased.
        address from = msg.sender;
        if (!isSenderEOA()) {
            from = applyL1ToL2Alias(msg.sender);
        }

        bytes memory opaqueData = abi.encodePacked(msg.value, _value, _gasLimit, _isCreation, _data);
        emit TransactionDeposited(from, _to, DEPOSIT_VERSION, opaqueData);
    }

    /// The least L2 gas a deposit of `_byteCount` bytes of calldata may buy.
    function minimumGasLimit(uint64 _byteCount) public pure returns (uint64) {
        return _byteCount * 40 + 21000;
    }

    /// OptimismPortal2's EOA library: the transaction's origin, or an EOA
    /// that delegates its code under EIP-7702 (23 bytes: 0xef0100 ‖ address).
    function isSenderEOA() internal view returns (bool isEOA_) {
        if (msg.sender == tx.origin) {
            isEOA_ = true;
        } else if (address(msg.sender).code.length == 23) {
            assembly {
                let ptr := mload(0x40)
                mstore(0x40, add(ptr, 0x20))
                extcodecopy(caller(), ptr, 0, 0x20)
                isEOA_ := eq(shr(232, mload(ptr)), 0xEF0100)
            }
        } else {
            isEOA_ = false;
        }
    }

    /// AddressAliasHelper.applyL1ToL2Alias: the address plus
    /// 0x1111000000000000000000000000000000001111, wrapping.
    function applyL1ToL2Alias(address l1Address) internal pure returns (address l2Address) {
        unchecked {
            l2Address = address(uint160(l1Address) + uint160(0x1111000000000000000000000000000000001111));
        }
    }
}
