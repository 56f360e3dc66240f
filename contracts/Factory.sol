// SPDX-License-Identifier: MIT
// Internal operations for the explorer tests (traces, Otterscan): contracts
// made by a contract (CREATE and CREATE2) and paid, calls into them at depth,
// self-destructs (in the creating transaction, and later), reverts with a
// reason and with a custom error (caught inside, and bubbled out), a static
// call, and logs at each depth.
pragma solidity 0.8.30;

contract Child {
    uint256 public value;

    event Set(uint256 value);

    error TooLow(uint256 given, uint256 least);

    constructor() payable {}

    function set(uint256 newValue) external payable {
        value = newValue;
        emit Set(newValue);
    }

    function fail(string calldata reason) external pure {
        revert(reason);
    }

    function atLeast(uint256 given) external pure {
        if (given < 10) revert TooLow(given, 10);
    }

    function destroy(address payable to) external {
        selfdestruct(to);
    }
}

contract Factory {
    Child public last;
    uint256 public made;

    event Made(address child, bool salted);

    /// Makes a child (CREATE, or CREATE2 with a non-zero `salt`), pays it
    /// half of the value at creation and the rest through a call.
    function make(bytes32 salt) external payable returns (address) {
        uint256 half = msg.value / 2;
        Child child = salt == bytes32(0) ? new Child{value: half}() : new Child{value: half, salt: salt}();
        child.set{value: msg.value - half}(made);
        made += 1;
        last = child;
        emit Made(address(child), salt != bytes32(0));
        return address(child);
    }

    /// Makes a child and destroys it in the same transaction: EIP-6780
    /// removes it, its balance going to the caller.
    function makeAndDestroy() external payable {
        Child child = new Child{value: msg.value}();
        child.destroy(payable(msg.sender));
    }

    /// Destroys the last child, made earlier: EIP-6780 only moves its balance.
    function destroyLast() external {
        last.destroy(payable(msg.sender));
    }

    /// The last child reverts with `reason`; caught here, so the
    /// transaction succeeds with a failed inner call.
    function tryFail(string calldata reason) external returns (bool) {
        try last.fail(reason) {
            return true;
        } catch {
            made += 1;
            return false;
        }
    }

    /// The last child reverts with `reason`, and so does the transaction.
    function mustFail(string calldata reason) external {
        made += 1;
        last.fail(reason);
    }

    /// The last child reverts with its custom error, bubbled out.
    function mustBeAtLeast(uint256 given) external {
        made += 1;
        last.atLeast(given);
    }

    /// The last child's value, through a static call.
    function readLast() external view returns (uint256) {
        return last.value();
    }
}
