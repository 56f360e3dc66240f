// SPDX-License-Identifier: MIT
// A game's on-chain state for the bench harness's game-like mix: each player
// moves on a board (its own storage only) and now and then submits a score to
// one shared leaderboard (every submission writes the same slots).
pragma solidity 0.8.30;

contract Game {
    struct Player {
        int64 x;
        int64 y;
        uint64 moves;
        uint64 best;
    }

    mapping(address => Player) public players;
    uint64 public topScore;
    address public topPlayer;
    uint64 public submissions;

    event Moved(address indexed player, int64 x, int64 y);
    event NewTopScore(address indexed player, uint64 score);

    function move(int64 dx, int64 dy) external {
        Player storage p = players[msg.sender];
        p.x += dx;
        p.y += dy;
        p.moves += 1;
        emit Moved(msg.sender, p.x, p.y);
    }

    function submit(uint64 score) external {
        Player storage p = players[msg.sender];
        if (score > p.best) {
            p.best = score;
        }
        submissions += 1;
        if (score > topScore) {
            topScore = score;
            topPlayer = msg.sender;
            emit NewTopScore(msg.sender, score);
        }
    }
}
