// SPDX-License-Identifier: MIT
// Edge cases for differential tests: gas exhaustion, storage refunds, and reads
// of block context and of the beneficiary's balance.
pragma solidity 0.8.30;

contract Probe {
    uint256 public counter;
    uint256 public scratch;
    uint256 public lastCoinbaseBalance;

    event Counted(uint256 indexed value, address caller);

    constructor() {
        scratch = 1;
    }

    /// Loops until the gas runs out.
    function burn() external {
        while (true) {
            counter += 1;
        }
    }

    /// Changes a slot and restores its original value in one call: the
    /// EIP-2200/EIP-3529 refund. The slot is never zero, so every node keeps
    /// it in its state trie (anvil keeps zero-valued slots, see the tests).
    function churn() external {
        uint256 original = scratch;
        scratch = original + 1;
        scratch = original;
        counter += 1;
        emit Counted(counter, msg.sender);
    }

    /// Stores the block beneficiary's balance as this transaction sees it.
    function readCoinbase() external {
        lastCoinbaseBalance = block.coinbase.balance;
    }
}
