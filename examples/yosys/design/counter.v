// A small design for the Yosys example: an 8-bit up/down counter with
// synchronous reset, load and enable, and a flag when it wraps.
module counter (
    input  wire       clk,
    input  wire       rst,
    input  wire       en,
    input  wire       up,
    input  wire       load,
    input  wire [7:0] value,
    output reg  [7:0] count,
    output wire       wrap
);
    assign wrap = en & (up ? (count == 8'hff) : (count == 8'h00));

    always @(posedge clk) begin
        if (rst)
            count <= 8'h00;
        else if (load)
            count <= value;
        else if (en)
            count <= up ? count + 8'd1 : count - 8'd1;
    end
endmodule
