// SPDX-License-Identifier: MIT
// The bench harness's hot contract: every call writes the same slot, so every
// transaction of the workload depends on the one before it.
pragma solidity 0.8.30;

contract Counter {
    uint256 public count;

    function bump() external {
        count += 1;
    }
}
